"""rosbag2 tools, built on `rosbags` (no ROS installation needed): bag plumbing shared by every
bag tool (`io`), labelled sample recordings (`sample`), bag anonymization (`anonymize`) and
re-encoding compressed images in their own layout and quality (`compressed`)."""
