% include("privacy_note")
<p><button type="submit">{{_("Send")}}</button></p>
</form>
% end
