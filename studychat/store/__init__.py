"""MongoDB: participant records (`data`) and chat transcripts (`chat_log`)."""
