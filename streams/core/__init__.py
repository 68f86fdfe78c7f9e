"""The pure core: rules with no Kafka, HTTP or faust import (tests/unit/test_layers.py checks).

catalog, matching  the event types, and which subscriptions want one
events             domain events: decode either wire format, validate, stable ids
schemas            Avro: load schemas/*.avsc, single-object encoding
payload            the webhook body's byte form (JSON.stringify's)
signing            X-Webhook-Signature and Standard Webhooks signatures
urls               which URLs and addresses we deliver to, in the form the client uses
secretbox          secrets at rest: AES-GCM under the master key, derived keys per purpose
apikeys            API keys (hashes only) and who a caller is
proxies            which reverse proxies are believed about scheme and client address
timeutil           times as the topics and the API write them
"""
