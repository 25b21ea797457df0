"""Images: which files are photos (crawl), decoding and metadata (Pillow, EXIF), parallel and GPU decoding."""
