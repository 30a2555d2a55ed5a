"""emr-chatops: share Amazon EMR clusters in other AWS accounts from chat.

One package, layered; imports run one way (DESIGN §16, enforced by
``tests/test_layers.py``)::

    domain  <-  app  <-  {aws, store, chat}  <-  ops  <-  emr.py (Errbot glue)

``domain`` is the standard library only: the model, its vocabulary, the rules and
decisions. ``app`` is the service and its ports. ``aws`` is the only importer of
boto3, ``store`` adapts Errbot's plugin storage to the ports, ``chat`` holds every
sentence the bot says (``chat/slack`` the only importer of slack_sdk and of the
SlackV3 backend). ``ops`` is the doctor.
"""
