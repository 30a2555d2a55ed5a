"""Presentation of Slack buttons (DESIGN §14): Block Kit messages, what a click did, and why it did nothing.

Built with ``slack_sdk.models.blocks`` (validated by slack_sdk, not hand-written JSON) and
rendered to the plain dicts ``chat.postMessage``/``chat.update`` take. Every message keeps its
text: the same words as on the Text console, command hint included, so a client without
Block Kit (a notification, a screen reader, the Text console) says what the buttons do.
Nothing here decides anything: :mod:`emrchatops.domain.buttons` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from emrchatops.chat.words import View, apology, refused
from emrchatops.domain.buttons import KEEP, OVERTIME, PREFIX, RELEASE, STILL, Action, Buttons, Click, Moot, Stale
from emrchatops.domain.state import ClusterRecord

TEXT_BLOCK = PREFIX + "text"
ACTIONS_BLOCK = PREFIX + "actions"
DONE_BLOCK = PREFIX + "done"  # + a number: one context line per click outcome
DONE_LIMIT = 20  # lines kept on one message (Slack allows 50 blocks)
TEXT_LIMIT = 3000  # Slack's limit for a section's text


def button(action: Action, value: str) -> ButtonElement:
    return ButtonElement(
        text=action.label, action_id=action.id, value=value, style="primary" if action.primary else None
    )


def actions_block(buttons: Buttons) -> ActionsBlock:
    return ActionsBlock(block_id=ACTIONS_BLOCK, elements=[button(a, buttons.value) for a in buttons.actions])


def message_blocks(text: str, buttons: Buttons) -> list[dict[str, Any]]:
    """A warning or reminder: its words, then its buttons."""
    section = SectionBlock(block_id=TEXT_BLOCK, text=MarkdownTextObject(text=text[:TEXT_LIMIT]))
    return [section.to_dict(), actions_block(buttons).to_dict()]


def kept_blocks(blocks: object) -> list[dict[str, Any]]:
    """Of a message's blocks (as Slack sent them back), the ones to keep on an update: our words and past outcomes.

    Only our own blocks, by id and type; buttons are never copied (an update adds them anew, or not).
    """
    if not isinstance(blocks, list):
        return []
    kept = []
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        block_id = block.get("block_id")
        words = block_id == TEXT_BLOCK and block.get("type") == "section"
        done = isinstance(block_id, str) and block_id.startswith(DONE_BLOCK) and block.get("type") == "context"
        if words or done:
            kept.append(dict(block))
    return kept[: 1 + DONE_LIMIT]


def updated_blocks(kept: Sequence[Mapping[str, Any]], line: str, buttons: Buttons | None) -> list[dict[str, Any]]:
    """The message after a click: its words and earlier outcomes, this outcome, and its buttons unless moot."""
    blocks = [dict(b) for b in kept][:DONE_LIMIT]
    if block_texts(blocks[-1:]) == [line]:  # a double click (same person, same minute): said once
        blocks.pop()
    done = sum(1 for b in blocks if str(b.get("block_id", "")).startswith(DONE_BLOCK))
    context = ContextBlock(block_id=f"{DONE_BLOCK}{done + 1}", elements=[MarkdownTextObject(text=line)])
    blocks.append(context.to_dict())
    if buttons is not None:
        blocks.append(actions_block(buttons).to_dict())
    return blocks


def block_texts(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The words of our blocks, in order: for the plain-text fallback of an update."""
    texts = []
    for block in blocks:
        if block.get("type") == "section":
            text = block.get("text")
            if isinstance(text, Mapping) and isinstance(text.get("text"), str):
                texts.append(text["text"])
        elif block.get("type") == "context":
            for element in block.get("elements") or ():
                if isinstance(element, Mapping) and isinstance(element.get("text"), str):
                    texts.append(element["text"])
    return texts


def fallback(blocks: Sequence[Mapping[str, Any]]) -> str:
    """The plain-text ``text`` of a block message: the same words, one per line."""
    return "\n".join(block_texts(blocks))


# -- what a click did, and why it did nothing ---------------------------------------------------------


def outcome(view: View, click: Click, user: str, name: str, now: datetime, until: datetime | None = None) -> str:
    """One line for the message: who did what, when ("🔒 kept by @someone at 14:31")."""
    who, at = view.mention(user, name), view.local(now)
    action = click.action
    if action == KEEP:
        return f"🔒 kept by {who} at {at}"
    if action == STILL:
        return f"🔒 still used: {who} confirmed the hold at {at}"
    if action == RELEASE:
        return f"🔓 released by {who} at {at}"
    assert action == OVERTIME
    return f"🌙 overtime until {view.local(until)}, asked by {who} at {at}"


def command_of(click: Click, cluster: str) -> str:
    """The command a button stands for, as the user would type it."""
    return f"!emr {click.action.command} {cluster}"


def not_allowed(click: Click, cluster: str) -> str:
    return (
        f"✗ You may not run `{command_of(click, cluster)}` here (the bot's ACCESS_CONTROLS), "
        "so this button does nothing for you; nothing was changed."
    )


def stale_text(view: View, click: Click, why: Stale, cluster: str) -> str:
    """The ephemeral answer to a click on a message that is out of date."""
    if why == "gone":
        return f"✗ {cluster} is no longer running: this button does nothing now. Nothing was changed; see !emr status."
    at = view.local(click.buttons.deadline)
    if click.buttons.kind == "reminder":
        return f"✗ This reminder is out of date: it asked until {at}. Nothing was changed; see !emr status."
    return f"✗ This warning is out of date: its deadline ({at}) has passed. Nothing was changed; see !emr status."


def gone_line(cluster: str) -> str:
    return f"🛑 {cluster} is no longer running."


def moot_line(view: View, why: Moot, buttons: Buttons, record: ClusterRecord | None, cluster: str) -> str:
    """The line a message gets when the poller takes its buttons away (no click): what made them moot.

    Names, not mentions: the people concerned were told already, this only closes the message.
    """
    if why == "gone" or record is None:
        return gone_line(cluster)
    if why == "passed":
        what = "the hold's reminder" if buttons.kind == "reminder" else "the deadline"
        return f"⌛ {what} ({view.local(buttons.deadline)}) has passed: see !emr status"
    if why == "held":
        names = view.aws_text(", ".join(h.name for h in record.holds), 120)  # escaped once on Slack
        return f"🔒 held by {names}: the idle countdown is off"
    if why == "overtime" and record.overtime is not None:
        return f"🌙 overtime until {view.local(record.overtime.until)}"
    hold = record.holder(buttons.user)
    if hold is None:
        return "🔓 the hold was released"
    return f"🔒 {hold.name} still uses it (confirmed at {view.local(hold.confirmed_at)})"


__all__ = [
    "ACTIONS_BLOCK",
    "TEXT_BLOCK",
    "apology",
    "fallback",
    "gone_line",
    "kept_blocks",
    "message_blocks",
    "moot_line",
    "not_allowed",
    "outcome",
    "refused",
    "stale_text",
    "updated_blocks",
]
