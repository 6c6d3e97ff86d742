"""Real OPC UA secure channels (asyncua): store-backed validation, loopback proofs, status codes.

asyncua is imported only here and only when a command needs a channel.
"""
