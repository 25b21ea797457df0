"""The indexing pipeline: crawl -> plan (pure diff) -> an executor decodes and encodes -> store -> build."""
