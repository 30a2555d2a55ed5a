"""The application service and the ports it is given (imports :mod:`emrchatops.domain` only).

The service returns facts and notices as data; the chat words them.
"""
