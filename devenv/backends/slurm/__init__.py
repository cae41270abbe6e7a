"""The slurm backend: workspaces as Slurm batch jobs on a GPU cluster, reached through its login node (issue 21)."""
