"""The indexing pipeline: crawl -> plan -> decode -> embed -> store -> build."""
