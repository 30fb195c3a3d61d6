"""What the composition root (`bot.runtime`) builds its world from: the clients to Slack, Redis
and the clusters, and the policy the bot starts with. Each module builds one kind of thing from
the settings; none starts anything. `bot check` and the audit commands use them too, without a
whole Runtime.
"""
