"""What the supervisor and its workers share: the control channel and the worker
settings. Neither process side imports the other's package; both import this one."""
