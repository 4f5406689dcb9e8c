"""The local stack: the whole backend on one machine. Never packaged or deployed."""
