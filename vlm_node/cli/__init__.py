"""Command-line tools: one `vlm-node` entry point with a subcommand per job."""
