"""Prometheus metrics of every role, each in its own ``CollectorRegistry``.

Counters and histograms that a request moves are recorded where the request is answered
(``rpc`` for the native protocol's dispatcher, ``gateway`` for HTTP routes) with cached label
children, so the hot path costs a dictionary lookup and one ``observe``. Gauges that describe
state (chunkservers, chunks, queues, disk) are collectors that read the role's state when
scraped (``master``, ``chunkserver``): nothing is recorded for them in between. ``listener``
serves a registry at ``/metrics``; ``wiring`` attaches all of it to each role. The metric list
is in ``docs/operations.md``. Nothing is imported here, so the client library stays light.
"""
