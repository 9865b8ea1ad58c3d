"""The modernization roadmap from MobileNetV3-L to RepViT (registered as ``roadmap_*`` models)."""
