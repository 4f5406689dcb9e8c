"""Telling people about spaces: reminders, follower notifications, the inbox and mobile push.

- rules.py: what a notification is and who gets it (pure)
- jobs.py: the request side: one job per space event on the notify queue
- fanout.py: the notify consumer: jobs become pages of followers and chunks of 100
- delivery.py: a chunk told: claimed in the inbox once, sent to open sockets and devices
- reminders.py, devices.py, inbox.py: the REST resources

Modules are imported by name (no re-exports here): the spaces package calls jobs.py,
which must not pull the REST modules (and the spaces package) back in.
"""
