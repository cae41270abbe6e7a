"""What the daemon does on its own, on a timer, with nobody asking: reconcile, autostop and their rules, the loops."""
