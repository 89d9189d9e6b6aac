"""Import strings for uvicorn: each module builds one app at import, from the environment."""
