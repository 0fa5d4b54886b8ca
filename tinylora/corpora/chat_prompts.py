"""Varied chat prompts for the forgetting measure: what a fine-tuned chat model should still answer.

Plain data, no logic. ``tinylora.experiments.base_answers`` asks the base model each prompt once
(greedy) and ships the answers; a fine-tuned model's loss on those answers measures how far it
moved away from what the base already did well (the forgetting measure of Biderman et al., 2024,
"LoRA Learns Less and Forgets Less", arXiv:2405.09673). None of them asks for a contact card.
"""
from __future__ import annotations

PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Give me three tips for sleeping better.",
    "What is the difference between weather and climate?",
    "Write a haiku about the sea.",
    "How do I boil an egg?",
    "Why is the sky blue?",
    "What does a compiler do?",
    "Name three planets in our solar system.",
    "Suggest a name for a friendly robot.",
    "How can I make my tomato plants grow well?",
    "What is a noun?",
    "Write a short thank-you note to a teacher.",
    "Describe a rainbow to a child.",
    "What causes the seasons on Earth?",
    "Give me a simple recipe for pancakes.",
    "Explain what a budget is.",
    "How do bees make honey?",
    "What are the primary colors?",
    "Tell me a fun fact about octopuses.",
    "What is the largest ocean on Earth?",
    "Why do we need to drink water?",
    "What is a prime number?",
    "How does a bicycle stay upright?",
    "What is the role of the heart in the body?",
    "Give two reasons to learn a second language.",
    "What is gravity?",
    "How do I stay focused while studying?",
    "What is the difference between a virus and a bacterium?",
    "What are clouds made of?",
    "List three ways to save energy at home.",
    "Who wrote Romeo and Juliet?",
]
