"""What the daemon must remember across restarts: its tables, their engine and migrations, in one place."""
