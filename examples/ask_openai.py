"""Ask the marketplace through its OpenAI-compatible front door (`sale serve`), as any OpenAI
client would, and show who answered and what it cost (the x-sale-* headers)."""

from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="none")
ask = [{"role": "user", "content": "Write a Python function that reverses a string."}]
raw = client.chat.completions.with_raw_response.create(model="sale", messages=ask)
answer = raw.parse()
print(answer.choices[0].message.content)
print("--")
print(f"task {raw.headers['x-sale-task-id']}: {raw.headers['x-sale-status']}")
print(f"winner {raw.headers['x-sale-winner']}, cost {raw.headers['x-sale-cost']}, {answer.usage}")
