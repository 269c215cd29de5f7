"""The supervisor process: the control plane and the processes serving traffic."""
