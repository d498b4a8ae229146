"""kgcurate: curate balanced image-text data for CLIP from CommonCrawl and Wikidata."""

__version__ = "0.1.0"
