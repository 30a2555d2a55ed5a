"""AWS: the only importers of boto3 and botocore.

The cross-account session (STS AssumeRole, token cached in plugin storage) and
the EMR/CloudWatch adapter that implements the service's Clusters port.
"""
