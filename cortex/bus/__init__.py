"""JetStream: connection, streams, subjects, the event envelope, publishing, the embedded server."""
