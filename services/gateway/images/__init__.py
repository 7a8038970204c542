"""Images: create generation jobs, download images, upload inputs."""
