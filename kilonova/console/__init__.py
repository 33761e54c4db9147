"""Remote consoles: the noVNC proxy service (``kilonova serve novncproxy``) and console URLs."""
