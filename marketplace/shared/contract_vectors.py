"""Test vectors of the signing contract (docs/contract/vectors/): events, a test key, their
canonical bytes and signatures, so that an implementation in another language can check its
canonical JSON and its signatures byte for byte before it meets a market.

Each vector is one event as the market sends it (`<name>.json`, pydantic's JSON: nulls in,
the schema's field order), its canonical bytes (`<name>.canonical`: RFC 8785 of that JSON
with the nulls left out, exactly, no final newline) and the Ed25519 signature, with the key
below, of the v2 domain tag followed by those bytes (`vectors.json`). Between them they hold
one event of each producing role, floats that languages write differently (2.0, 0.1, 1e-7,
8e-05, 1e16), strings with escapes and characters beyond ASCII, null optional fields and
nested objects. Everything is fixed (ids, times, the key's seed) and Ed25519 signatures are
deterministic, so `sale contract` writes the same files each time and `--check` can hold them.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.shared.canonical_json import of_event
from marketplace.shared.signing import DOMAIN, key_id_of, public_text
from schemas.codec import encode
from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    BidScore,
    BidSubmitted,
    CodingInputs,
    Event,
    ReviewSubmitted,
    ScoredBid,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
)

# RFC 8032's first Ed25519 test key: published, so that no one can mistake it for a real one.
TEST_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
WARNING = "TEST ONLY: this private key is public (RFC 8032, test 1). Never trust it."
AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 5, 1, 12, 0, 3, 123400, tzinfo=UTC)
TASK = "he-7"
BID = UUID("00000000-0000-4000-8000-0000000000b1")
OTHER_BID = UUID("00000000-0000-4000-8000-0000000000b2")
PROMPT = (
    'def shout(s: str) -> str:\n    """Return s in capitals, "quoted", a tab\there, a '
    'backslash \\ and é, 中文, 😀, \u2028, \x01."""\n'
)


def _id(n: int) -> UUID:
    return UUID(f"00000000-0000-4000-8000-{n:012x}")


def events() -> dict[str, Event]:
    """The vectors' events by name, at least one for each role that produces events."""
    usage = Usage(requests=1, prompt_tokens=120, completion_tokens=40, cost=0.00008, seconds=0.1)
    return {
        "client-task-posted": TaskPosted(
            event_id=_id(1),
            occurred_at=AT,
            producer="client",
            task_id=TASK,
            kind="coding",
            prompt=PROMPT,
            inputs=CodingInputs(entry_point="shout", examples=["assert shout('a') == 'A'"]),
            budget=0.1,
            bid_window_s=2.0,
            tenant="acme",
        ),
        "client-task-checks": TaskChecks(
            event_id=_id(2),
            occurred_at=AT,
            producer="client",
            task_id="dune-1",
            checks=SearchChecks(answers=["Frank Herbert", "フランク・ハーバート"]),
        ),
        "agent-heartbeat": AgentHeartbeat(
            event_id=_id(3),
            occurred_at=AT,
            producer="small",
            agent_id="small",
            model="smollm2-135m",
            price=0.1,
            kinds=["coding", "search"],
        ),
        "agent-bid-submitted": BidSubmitted(
            event_id=_id(4),
            occurred_at=LATER,
            producer="small",
            task_id=TASK,
            bid_id=BID,
            agent_id="small",
            model="smollm2-135m",
            plan="def shout(s):\n    return s.upper()\n",
            plan_tokens=12,
            entropy=1e-7,
            price=2.0,
            usage=usage,
            examples_pass=False,
            failure='AssertionError: shout("é") != "É"\n\tline 3',
        ),
        "agent-review-submitted": ReviewSubmitted(
            event_id=_id(5),
            occurred_at=LATER,
            producer="large",
            task_id=TASK,
            juror="large",
            scores=[BidScore(bid_id=BID, score=4.5), BidScore(bid_id=OTHER_BID, score=None)],
            usage=usage,
        ),
        "auctioneer-auction-closed": AuctionClosed(
            event_id=_id(6),
            occurred_at=LATER,
            producer="auctioneer",
            task_id=TASK,
            reason="awarded",
            winner_bid_id=BID,
            winner_agent_id="small",
            winning_plan="def shout(s):\n    return s.upper()\n",
            bids=[
                ScoredBid(
                    bid_id=BID,
                    agent_id="small",
                    round=0,
                    price=2.0,
                    plan_tokens=12,
                    entropy=1e-7,
                    jury={"large": 4.5, "medium": None},
                    cost=0.000024,
                    value=4.5,
                    score=4.499976,
                )
            ],
        ),
        "agent-task-result": TaskResult(
            event_id=_id(7),
            occurred_at=LATER,
            producer="small",
            task_id=TASK,
            agent_id="small",
            bid_id=BID,
            output='def shout(s):\n    return s.upper()  # "é" → "É", 😀\n',
            usage=usage,
            cost=1e16,
            duration_s=0.1,
        ),
        "verifier-task-outcome": TaskOutcome(
            event_id=_id(8),
            occurred_at=LATER,
            producer="verifier",
            task_id=TASK,
            passed=True,
            score=1.0,
            result_event_id=_id(7),
        ),
    }


def test_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(TEST_SEED)


def vector_files() -> dict[str, str]:
    """Every file of docs/contract/vectors/, by path relative to docs/contract/, with its
    text: each event as sent, its canonical bytes, and the index with the key and signatures."""
    key = test_key()
    public = key.public_key()
    files: dict[str, str] = {}
    index: list[dict[str, Any]] = []
    for name, event in events().items():
        canonical = of_event(event)
        files[f"vectors/{name}.json"] = encode(event).decode() + "\n"
        files[f"vectors/{name}.canonical"] = canonical.decode()
        index.append(
            {
                "name": name,
                "type": event.type,
                "event": f"{name}.json",
                "canonical": f"{name}.canonical",
                "key_id": key_id_of(public),
                "signature": base64.b64encode(key.sign(DOMAIN + canonical)).decode(),
            }
        )
    document = {
        "$comment": "Generated by `sale contract`: do not edit. See docs/contract/README.md.",
        "domain": DOMAIN.decode().replace("\x00", "\\x00"),
        "domain_hex": DOMAIN.hex(),
        "signed": "domain bytes, then the bytes of <canonical>",
        "key": {
            "warning": WARNING,
            "seed_hex": TEST_SEED.hex(),
            "public_key": public_text(public),
            "key_id": key_id_of(public),
        },
        "vectors": index,
    }
    files["vectors/vectors.json"] = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return files
