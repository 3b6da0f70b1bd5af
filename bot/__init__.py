"""The admin bot (aiogram 3): menus, the add-account wizard, live cards and alerts over the fleet services."""
