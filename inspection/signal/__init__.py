"""The signal to the line: decided cars leave the database through a transactional outbox to MQTT (and OPC UA).

config  the validated `signal` section (MQTT, OPC UA, outbox bound), refusing open listeners off loopback
mqtt    the paho-mqtt sink: QoS 1 per car plus a retained "last", username/password and TLS
outbox  the relay: claims the oldest rows, publishes them, deletes them once every sink took them
"""
