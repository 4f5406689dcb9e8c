"""The embedded media server: a local stand-in for Amazon Chime SDK Meetings."""
