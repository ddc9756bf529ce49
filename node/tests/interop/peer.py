#!/usr/bin/env python3
"""A minimal leasemesh peer written with py-libp2p (PyPI `libp2p`), default-configured:
TCP, Noise, Yamux, gossipsub with strict signing (every message it sends is signed and carries
from + seqno; every message it accepts must be too).

The one leasemesh-specific setting is the message id: the BLAKE3 hash of the payload under the
domain tag `leasemesh/v1/gossip-id` (see docs/interop.md), so that the same object is one message
whoever sends it. Payloads are leasemesh's signed objects as they are; this peer does not decode
them, the nodes check them.

It is driven by JSON lines, so a test (node/tests/interop_py.rs) or a person can use it:

  peer.py --connect /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo... [--topic /leasemesh/1/orders]

stdout, one JSON object per line:
  {"event": "ready", "peer_id": ...}      connected, subscribed, and a node is in the topic
  {"event": "message", "topic": ..., "id_hex": ..., "data_hex": ..., "from": ...}
  {"event": "published", "id_hex": ...}
  {"event": "error", "error": ...}
stdin, one JSON object per line:
  {"cmd": "publish", "topic": ..., "data_hex": ...}
  {"cmd": "publish_bad_envelope", "topic": ..., "data_hex": ...}   gossipsub signature broken
  {"cmd": "quit"}
"""

import argparse
import json
import sys

import blake3
import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

ORDERS_TOPIC = "/leasemesh/1/orders"
GOSSIP_ID_TAG = b"leasemesh/v1/gossip-id"
# gossipsub v1.1: what rust-libp2p and go-libp2p speak besides the newer versions.
MESHSUB = TProtocol("/meshsub/1.1.0")
# The envelope signature covers this prefix and the protobuf Message without signature and key.
SIGNING_PREFIX = b"libp2p-pubsub:"


def message_id(msg: rpc_pb2.Message) -> bytes:
    """leasemesh's gossip message id: BLAKE3(len(tag) || tag || payload)."""
    return blake3.blake3(bytes([len(GOSSIP_ID_TAG)]) + GOSSIP_ID_TAG + msg.data).digest()


def say(**event) -> None:
    print(json.dumps(event), flush=True)


async def receive(subscription, topic: str) -> None:
    while True:
        msg = await subscription.get()
        say(
            event="message",
            topic=topic,
            id_hex=message_id(msg).hex(),
            data_hex=msg.data.hex(),
            # The node that wrote the envelope (gossipsub's `from`), base58.
            **{"from": multiaddr_peer(msg.from_id)},
        )


def multiaddr_peer(raw: bytes) -> str:
    from libp2p.peer.id import ID

    return ID(raw).to_base58()


async def publish_bad_envelope(pubsub: Pubsub, topic: str, data: bytes) -> None:
    """Sends a message whose gossipsub signature does not verify, straight to the mesh (our own
    pubsub would refuse it), to show that the nodes refuse and count it."""
    msg = rpc_pb2.Message(
        data=data, topicIDs=[topic], from_id=pubsub.my_id.to_bytes(), seqno=pubsub._next_seqno()
    )
    sig = pubsub.sign_key.sign(SIGNING_PREFIX + msg.SerializeToString())
    msg.key = pubsub.host.get_public_key().serialize()
    msg.signature = bytes([sig[0] ^ 0xFF]) + sig[1:]
    await pubsub.router.publish(pubsub.my_id, msg)


async def commands(pubsub: Pubsub, done: trio.Event) -> None:
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            break
        try:
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                break
            data = bytes.fromhex(cmd["data_hex"])
            topic = cmd.get("topic", ORDERS_TOPIC)
            if cmd["cmd"] == "publish":
                await pubsub.publish(topic, data)
            elif cmd["cmd"] == "publish_bad_envelope":
                await publish_bad_envelope(pubsub, topic, data)
            else:
                raise ValueError(f"unknown command {cmd['cmd']!r}")
            say(event="published", id_hex=message_id(rpc_pb2.Message(data=data)).hex())
        except Exception as e:  # report and go on: the driver decides what a failure means
            say(event="error", error=repr(e))
    done.set()


async def wait_for_topic_peers(pubsub: Pubsub, topic: str, peers, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not all(p in pubsub.peer_topics.get(topic, set()) for p in peers):
            await trio.sleep(0.05)


async def run(connect: list[str], topic: str) -> None:
    host = new_host(key_pair=create_new_key_pair())
    gossipsub = GossipSub(
        protocols=[MESHSUB],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
    )
    pubsub = Pubsub(host, gossipsub, msg_id_constructor=message_id)
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with host.run(listen_addrs=listen), trio.open_nursery() as nursery:
        async with background_trio_service(pubsub), background_trio_service(gossipsub):
            await pubsub.wait_until_ready()
            subscription = await pubsub.subscribe(topic)
            peers = []
            for addr in connect:
                info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
                await host.connect(info)
                peers.append(info.peer_id)
            await wait_for_topic_peers(pubsub, topic, peers, timeout=30)
            nursery.start_soon(receive, subscription, topic)
            say(event="ready", peer_id=host.get_id().to_base58())
            done = trio.Event()
            nursery.start_soon(commands, pubsub, done)
            await done.wait()
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", action="append", default=[], help="a node's /p2p multiaddr")
    parser.add_argument("--topic", default=ORDERS_TOPIC)
    args = parser.parse_args()
    try:
        trio.run(run, args.connect, args.topic)
    except Exception as e:
        say(event="error", error=repr(e))
        sys.exit(1)


if __name__ == "__main__":
    main()
