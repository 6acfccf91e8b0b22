"""Generate a realistic supervised fine-tuning JSONL file of a given size.

Examples look like production support data: one system prompt, one to three user turns,
assistant replies of varied length with lists, numbers, prices, some code, some non-ASCII
text, and a share of tool calls. Words follow a Zipf distribution over an English vocabulary
so BPE sees natural-looking text. Deterministic for a given seed.

    python bench/gen_sft.py OUT.jsonl --size-mb 512 [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = (
    "You are Contoso Outdoor's support assistant. Answer briefly and accurately, follow Contoso "
    "policy, and refuse unsafe or out-of-scope requests politely."
)

VOCAB = """
the of and to a in is you that it for your on with as are this be at or have from by can our we
will an not order return shipping tent pack boots jacket stove sleeping bag warranty refund
please thank help account days business store pickup member Trail Club gift card price match
policy item items size fit weather waterproof rain seam sealed zipper pole stakes footprint
delivery tracking number label carrier address package box receipt purchase online website app
checkout cart discount code sale season winter summer trail hike hiking camping backpacking
weight grams liters capacity frame hip belt shoulder strap torso length women's men's unisex
insulation down synthetic fill power temperature rating comfort limit liner hood draft collar
fuel canister burner simmer boil minutes cup pot cookset lid handle titanium aluminum steel
replace repair exchange color stock available restock backorder ship ships shipped arrived
damaged missing wrong defect manufacturing covered cover coverage claim photo photos email check
status update confirm cancel change changed before after within under over about more less than
also only just when if then so but because while until since during each every any all most some
many few other another same different new used clean cleaning wash dry store storage care
instructions guide recommend recommended best better good great happy sorry understand know let
me look see find get make take give keep use need want like feel think trip trips trailhead
campsite reservation permit backcountry national park forest lake river mountain summit ridge
valley canyon desert snow ice crampons microspikes gaiters trekking poles headlamp lantern
batteries rechargeable solar charger power bank filter purifier bottle bladder hydration
reservoir electrolyte snacks meals dehydrated freeze dried calories protein breakfast layers
base layer merino wool fleece softshell hardshell breathable membrane ventilation pit zips socks
blisters lacing heel lock toe box midsole outsole tread traction stability support ankle break
in leather suede nubuck waterproofing spray conditioner treatment durable finish repellent
children kids adult family friends group solo beginner experienced guide map compass navigation
distance miles kilometers elevation gain loss pace rest break water source campfire ban rules
safety emergency first aid kit whistle bear canister spray food hang wildlife respect leave
trace shipment warehouse inventory supplier manufacturer model version generation edition
upgrade feature features specification specifications dimensions packed folded height width
depth floor area vestibule doors windows mesh canopy rainfly guylines tension pitch setup
takedown minutes
""".split()

NON_ASCII = [
    "café",
    "naïve",
    "Zürich",
    "São Paulo",
    "Montréal",
    "–",
    "°F",
    "°C",
    "€",
    "✓",
    "日本語",
    "Ölfarbe",
]
CODE = [
    "```python\nfor item in order.items:\n    print(item.sku, item.qty)\n```",
    '```json\n{"order_id": "CO-48213", "status": "shipped"}\n```',
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order's status by order number.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "Order number like CO-12345"}},
                "required": ["order_id"],
            },
        },
    }
]


class TextMaker:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        weights = [1 / (rank + 1) ** 0.85 for rank in range(len(VOCAB))]
        total = 0.0
        self.cum: list[float] = []
        for w in weights:
            total += w
            self.cum.append(total)

    def sentence(self, n_words: int) -> str:
        words = self.rng.choices(VOCAB, cum_weights=self.cum, k=n_words)
        rng = self.rng
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), f"${rng.randint(5, 400)}.{rng.randint(0, 99):02d}")
        if rng.random() < 0.25:
            words.insert(rng.randrange(len(words)), f"CO-{rng.randint(10000, 99999)}")
        if rng.random() < 0.08:
            words.insert(rng.randrange(len(words)), rng.choice(NON_ASCII))
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!"])

    def paragraph(self, min_words: int, max_words: int) -> str:
        rng = self.rng
        target = rng.randint(min_words, max_words)
        parts: list[str] = []
        written = 0
        while written < target:
            n = rng.randint(6, 22)
            parts.append(self.sentence(n))
            written += n
        if rng.random() < 0.2:
            items = [f"{i + 1}) {self.sentence(rng.randint(4, 10))}" for i in range(rng.randint(2, 5))]
            parts.append("\n".join(items))
        if rng.random() < 0.03:
            parts.append(rng.choice(CODE))
        return " ".join(parts)


def example(tm: TextMaker) -> dict[str, object]:
    rng = tm.rng
    messages: list[dict[str, object]] = [{"role": "system", "content": SYSTEM}]
    if rng.random() < 0.08:
        call_id = f"call_{rng.getrandbits(48):012x}"
        order = f"CO-{rng.randint(10000, 99999)}"
        messages += [
            {"role": "user", "content": tm.paragraph(8, 30) + f" My order is {order}."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": json.dumps({"order_id": order})},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": json.dumps(
                    {
                        "status": rng.choice(["shipped", "processing", "delivered"]),
                        "eta_days": rng.randint(1, 6),
                    }
                ),
            },
            {"role": "assistant", "content": tm.paragraph(20, 90)},
        ]
        return {"messages": messages, "tools": TOOLS}
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        messages.append({"role": "user", "content": tm.paragraph(10, 60)})
        messages.append({"role": "assistant", "content": tm.paragraph(25, 220)})
    return {"messages": messages}


def generate(out: Path, size_bytes: int, seed: int) -> int:
    """Write examples until the file reaches `size_bytes`; returns the number of examples."""
    tm = TextMaker(random.Random(seed))
    written = n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        while written < size_bytes:
            line = json.dumps(example(tm), ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--size-mb", type=float, default=512.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n = generate(args.out, int(args.size_mb * 2**20), args.seed)
    print(f"wrote {args.out}: {n:,} examples, {args.out.stat().st_size / 2**20:,.1f} MB")


if __name__ == "__main__":
    main()
