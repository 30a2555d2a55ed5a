"""emr-chatops as one layered package (DESIGN §16): domain, app, aws, store, chat, ops."""
