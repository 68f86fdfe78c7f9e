"""The operators' web console at /console: server-rendered pages over the HTTP API.

It signs in with an API key (a workspace's, or the admin key), keeps it in an HttpOnly,
SameSite=Strict cookie (Secure over https) sealed under a key for sessions only, and calls
this worker's own API with it, so tenant rules, validation and routing are the API's, not a
copy. Signing out ends the session on every worker. No CDN: styles are served from here.
"""
