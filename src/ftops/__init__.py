"""ftops: the life of a fine-tuned Azure OpenAI model, declared as code."""

__version__ = "0.1.0"
