"""The image download core, without Spark: fetch politely and safely, decode and resize, write
deterministic webdataset shards. A Spark stage runs :func:`download_shard` once per shard.

Modules: ``status`` (the closed set of outcomes), ``policy`` (opt-out and retry rules), ``addresses``
(SSRF guard), ``hosts`` (per-host limits), ``fetch`` (HTTP), ``images`` (Pillow), ``shards`` (shard
assignment, keys, tar and sizes.json), ``shard_task`` (one shard end to end).
"""

from kgcurate.download.shard_task import DownloadConfig, DownloadRow, Sample, ShardResult, Text, download_shard

__all__ = ["DownloadConfig", "DownloadRow", "Sample", "ShardResult", "Text", "download_shard"]
