"""Reading videos: streamed decoding with the container's timing (:mod:`.decode`) and
writing chosen frames out as images (:mod:`.frames`)."""
