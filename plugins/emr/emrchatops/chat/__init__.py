"""Every sentence the bot says, plain markup, and the report's chart.

``chat/slack`` is the only importer of slack_sdk and of the SlackV3 backend.
"""
