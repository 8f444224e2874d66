"""The daemon on the login node: store, submission, monitor and the Unix socket server."""
