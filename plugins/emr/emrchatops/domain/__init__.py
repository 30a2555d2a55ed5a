"""The model and its rules: standard library only, ``now`` always passed in.

State and its codec (:mod:`.state`), the automatic rules (:mod:`.rules`), the
decisions of the commands (:mod:`.decisions`), the usage ledger (:mod:`.ledger`),
prices and costs (:mod:`.costs`), templates, settings, buttons as data and the
domain errors. Nothing here imports boto3, errbot or slack_sdk.
"""
