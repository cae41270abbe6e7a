"""What the daemon does for people, whatever asked it (HTTP routes, loops, the token CLI): the rules live here."""
