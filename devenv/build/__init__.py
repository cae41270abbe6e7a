"""From a lock to an image: base images, Dockerfile rendering, verified build contexts, SDK builds."""
