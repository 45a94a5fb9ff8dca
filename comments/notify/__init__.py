"""Notifications: mail to moderators and readers and webhooks, delivered from the outbox by a worker."""
