"""Serving: request/response schemas from the dataset spec, the prediction log, the service runtime.

The BentoML service itself is ``bentos/service.py``; everything it needs that is not BentoML
lives here so it can be tested without a server.
"""
