"""The store's layout: its categories, which of them are anchors, and what complements them.

Anchor items (phones, laptops, cameras, sports items) each trigger one or two complements; the
rest of the catalog fills the other categories. ``catalog`` turns this layout into items.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """A product category: its tags, what its generic items are, and its log-normal prices."""

    name: str
    tags: tuple[str, str]
    nouns: tuple[str, ...]  # what generic items of this category are
    price_median: float
    price_sigma: float
    brand_suffixes: tuple[str, ...] = ("",)


CATEGORIES: tuple[Category, ...] = (
    Category("Phones", ("phones", "electronics"), ("Phone",), 450, 0.45, ("", "tel", " Mobile")),
    Category(
        "Phone Accessories",
        ("phone-accessories", "electronics"),
        ("USB-C Cable", "Power Bank", "Earbuds", "Phone Stand", "Wall Charger"),
        22,
        0.5,
    ),
    Category("Laptops", ("laptops", "electronics"), ("Laptop",), 950, 0.4, ("", "tech", " Labs")),
    Category(
        "Laptop Accessories",
        ("laptop-accessories", "electronics"),
        ("USB Hub", "Laptop Stand", "Webcam", "Mouse Pad", "Keyboard"),
        35,
        0.6,
    ),
    Category("Cameras", ("cameras", "photography"), ("Camera",), 650, 0.5, ("", " Optics")),
    Category(
        "Camera Accessories",
        ("camera-accessories", "photography"),
        ("Tripod", "Lens Cleaning Kit", "Camera Strap", "Ring Light", "Flash"),
        55,
        0.7,
    ),
    Category(
        "Books",
        ("books", "reading"),
        ("Novel", "Mystery", "Cookbook", "Travel Guide", "Picture Book", "Science Book"),
        16,
        0.35,
        (" Press", " Books", " House"),
    ),
    Category(
        "Kitchen",
        ("kitchen", "home"),
        ("Chef Knife", "Frying Pan", "Blender", "Coffee Grinder", "Kettle", "Cutting Board"),
        45,
        0.7,
        ("", " Home", "ware"),
    ),
    Category(
        "Sports",
        ("sports", "fitness"),
        (
            "Running Shoes",
            "Yoga Mat",
            "Tennis Racket",
            "Dumbbell Set",
            "Cycling Helmet",
            "Football",
        ),
        40,
        0.7,
        ("", " Sport", " Athletics"),
    ),
    Category(
        "Outdoor",
        ("outdoor", "camping"),
        ("Tent", "Sleeping Bag", "Hiking Backpack", "Water Bottle", "Headlamp", "Rain Jacket"),
        60,
        0.7,
        ("", " Outdoors", " Trail"),
    ),
    Category(
        "Toys",
        ("toys", "kids"),
        ("Building Blocks", "Puzzle", "Plush Bear", "Toy Car", "Board Game", "Science Kit"),
        25,
        0.6,
        ("", " Toys", " Kids"),
    ),
    Category(
        "Beauty",
        ("beauty", "personal-care"),
        ("Face Cream", "Shampoo", "Lip Balm", "Perfume", "Sunscreen", "Body Lotion"),
        18,
        0.6,
        ("", " Beauty", " Skin"),
    ),
)
CATEGORY_BY_NAME = {c.name: c for c in CATEGORIES}

# Anchor categories and their share of the catalog; each anchor item triggers 1-2 complements.
ANCHOR_SHARES = {"Phones": 0.05, "Laptops": 0.04, "Cameras": 0.035, "Sports": 0.07}
# Electronics anchors get accessories made for them ("Case for Aurora X5") in this category.
DEDICATED_ACCESSORIES = {
    "Phones": ("Phone Accessories", ("Case", "Fast Charger", "Screen Protector", "Car Mount")),
    "Laptops": ("Laptop Accessories", ("Sleeve", "Wireless Mouse", "Charger", "Docking Station")),
    "Cameras": ("Camera Accessories", ("Lens", "Memory Card", "Spare Battery", "Camera Bag")),
}
# Sports items trigger an Outdoor item that goes with them.
SPORTS_TO_OUTDOOR = {
    "Running Shoes": ("Water Bottle", "Headlamp", "Rain Jacket"),
    "Yoga Mat": ("Water Bottle", "Hiking Backpack"),
    "Tennis Racket": ("Water Bottle", "Hiking Backpack"),
    "Dumbbell Set": ("Water Bottle",),
    "Cycling Helmet": ("Headlamp", "Rain Jacket", "Water Bottle"),
    "Football": ("Water Bottle", "Hiking Backpack"),
}
# The rest of the catalog is spread over the other categories by these shares.
FILLER_SHARES = {"Books": 0.3, "Kitchen": 0.2, "Outdoor": 0.2, "Toys": 0.15, "Beauty": 0.15}
