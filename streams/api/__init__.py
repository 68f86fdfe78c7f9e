"""The REST API: validates requests, writes control commands, reads the local tables.

It never imports the stages: it meets the pipeline only through topics and tables.
"""
