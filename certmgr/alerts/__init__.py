"""Expiry levels, alert channels (log, SMTP, webhook) and the state that sends each alert once."""
