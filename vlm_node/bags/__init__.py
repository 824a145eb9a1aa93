"""rosbag2 tools, built on `rosbags` (no ROS installation needed): bag plumbing shared by every
bag tool (`io`), labelled sample recordings (`sample`), bag anonymization (`anonymize`, its
figures in `summary`), re-encoding compressed images in their own layout and quality
(`compressed`), several bags in one call (`batch`) and their scale-out on Ray: time chunks
(`chunks`) run as Ray tasks and merged by the driver (`ray_runner`)."""
