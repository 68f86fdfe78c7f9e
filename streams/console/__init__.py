"""The operators' web console at /console: server-rendered pages over the HTTP API.

It signs in with an API key (a workspace's, or the admin key), keeps it sealed in an
HttpOnly, SameSite=Strict cookie, and calls this worker's own API with it, so tenant rules,
validation and routing are the API's, not a copy. No CDN: styles are served from here.
"""
