% rebase("base", title=_("About"))
<h1>{{_("About this library")}}</h1>
<p>{{_("Collective protection protects the group itself: an organisation, a community or a network that is at risk because it defends rights, lands, territories, forests and resources. It rests on the community's own ties, its visibility and its own capacities. Communities are agents of their own protection.")}}</p>
<p>{{_("This library was gathered by a coalition led by representatives of indigenous peoples, Afro-descendant and local communities, with supporting organisations. It brings together guides, tools, templates, audio and video about what has protected communities and what they still need.")}}</p>
<h2>{{_("How this hotspot works")}}</h2>
<p>{{_("This hotspot works without internet. New resources arrive on USB drives. Links to original web pages need internet and leave the hotspot.")}}</p>
<h2>{{_("Your privacy")}}</h2>
<p>{{_("The hotspot does not keep your phone's address or name, or what you read. Nothing on these pages is loaded from outside the hotspot.")}}</p>
