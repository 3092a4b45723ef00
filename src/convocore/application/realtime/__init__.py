"""The real-time engine: live streams, the order of what they are sent, catching up and
resuming (``hub``, ``streams``), who hears of what (``interests``), and the use cases behind
the sockets (``use_cases``)."""
