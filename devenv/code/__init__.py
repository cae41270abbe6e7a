"""The project's folder in its workspace: collected by the client, uploaded once, placed by the daemon, synced.

collect (client: which files, as a tar), client (the upload and sync calls), manifest (hashes and limits),
store (the daemon's content-addressed uploads), place (the in-workspace script and the archive checks),
deliver (the daemon running that script through any backend).
"""
