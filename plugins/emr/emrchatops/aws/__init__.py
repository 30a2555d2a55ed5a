"""The AWS layer: the only modules that import boto3 (DESIGN §16)."""
