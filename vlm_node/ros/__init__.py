"""The ROS 2 adapter: the rclpy node and the one module that converts messages. Only this
subpackage imports rclpy and message packages; everything it calls is plain-Python core."""
